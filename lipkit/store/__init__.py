"""Where runs and cached results live on disk: the name of every file of a run folder
(:mod:`lipkit.store.paths`), how those files are written and checked (:mod:`lipkit.store.folder`),
and content-addressed caches (:mod:`lipkit.store.cache`)."""
