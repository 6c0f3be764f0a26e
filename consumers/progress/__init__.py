"""Live progress: a pure reducer over each session's events, published as snapshots."""
