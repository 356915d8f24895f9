"""eplb-harness: a scoring harness for Mixture-of-Experts expert-parallel load balancers."""

__version__ = "0.1.0"
