"""Event records and the pure domain: no Faust, no I/O."""
