"""Corpora -> one manifest (a `datasets.Dataset`), audio decoding and checks, splits, the offline corpus."""
