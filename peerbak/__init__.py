"""peerbak: back up to a pool of friends, encrypted and erasure-coded over SSH."""

__version__ = "0.1.0"
