"""Fault injection against real processes: services, workers, load, faults, checker, report."""
