"""Files on disk: the store's layout, safetensors weights, run directories, atomic writes."""

from ekdcli.store.layout import Store, safe_name

__all__ = ["Store", "safe_name"]
