from lipkit.cli import main

raise SystemExit(main())
