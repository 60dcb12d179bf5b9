"""The ``ekd`` command line: a click group whose commands are thin wrappers over ekdcli.jobs."""
