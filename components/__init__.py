"""KFP components of the daily run: each is a thin typed wrapper that maps artifacts to paths and calls ebr."""
