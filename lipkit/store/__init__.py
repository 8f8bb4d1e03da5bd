"""Where runs and cached results live on disk: run folders (:mod:`lipkit.store.folder`) and
content-addressed caches (:mod:`lipkit.store.cache`)."""
