"""Replay recorded traffic in an isolated evaluation run, and compare runs (no Faust here)."""
