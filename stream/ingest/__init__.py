"""``ladsdin ingest``: turn LiCSAR interferograms (or LiCSBAS / MintPy time series) into
``licsar.epochs.v1`` events, each epoch published exactly once across restarts.

- :mod:`.ledger`: the durable per-frame record (what was consumed, inverted and published).
- :mod:`.publisher`: write-ahead publication (intent, send, done) with recovery from the topic.
- :mod:`.reference`: the reference area, configured or chosen automatically.
- :mod:`.licsar`: the frame-directory ingest with the incremental small-baseline inversion.
- :mod:`.replay`: LiCSBAS ``cum.h5`` / MintPy ``timeseries.h5`` replay.
- :mod:`.synthetic`: a seeded LiCSAR frame-directory generator for tests, demos and benchmarks.
"""
