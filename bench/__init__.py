"""Benchmark scripts and the scoring, baseline and scenario modules they share."""
