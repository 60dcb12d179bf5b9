"""The errors a plugin raises, so that the CLI shows them as one sentence and an exit code.

``UsageError`` (exit 2): the user asked for something wrong (a bad option, a missing file).
``JobError`` (exit 1): work that started and could not finish.  ``PluginError`` (exit 1): a
plugin that cannot load or conflicts with another.
"""

from ekdcli.util.errors import EkdError, JobError, PluginError, UsageError, closest, did_you_mean

__all__ = ["EkdError", "JobError", "PluginError", "UsageError", "closest", "did_you_mean"]
