"""Data: audio loading, manifests and importers, α language sampling, batching, synth/ (espeak-ng corpus)."""
