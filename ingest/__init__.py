"""The ingest (``ladsdin.ingest``, ``ingest/``): LiCSAR interferograms, or LiCSBAS / MintPy time
series, or any cube, into ``licsar.epochs.v1`` events, each epoch published exactly once across
restarts.

- :mod:`.scheduler`: the frame-directory ingest: which epoch to invert when, bookkeeping, restarts.
- :mod:`.assembler`: one epoch's interferograms through the incremental inversion into its event.
- :mod:`.frame`: scanning a frame directory, coherence weights, reading one interferogram.
- :mod:`.reference`: the reference area, configured or chosen automatically.
- :mod:`.ledger`: the durable per-frame record (what was consumed, inverted and published).
- :mod:`.publisher`: write-ahead publication (intent, send, done) with recovery from the topic.
- :mod:`.cube`: a cube's epochs as events (``ladsdin publish``, the demo).
- :mod:`.replay`: LiCSBAS ``cum.h5`` / MintPy ``timeseries.h5`` replay through the ledger.
- :mod:`.synthetic`: a seeded LiCSAR frame-directory generator for tests, demos and benchmarks.

It may import ``models``, ``state``, ``formats`` and ``stream``; nothing imports it but ``cli``.
"""
