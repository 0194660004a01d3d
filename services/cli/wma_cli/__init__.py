"""The ``wma`` command line: a thin dispatcher over each package's ``cli`` module."""
