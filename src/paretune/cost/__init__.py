"""What a run costs: device, time, FLOPs, energy and dollars for training (meter.py), and the
latency, throughput and dollars per million predictions of serving it (inference.py)."""
