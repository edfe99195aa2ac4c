"""shelterwatch: the command line entry point and the demo estate that ties the parts together."""

__version__ = "0.1.0"
