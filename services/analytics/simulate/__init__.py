"""The launch simulator: a realistic viral launch (daily curve, press spikes, share cascades, ratings) as events."""
