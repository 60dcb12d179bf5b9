"""The plugin SDK: what first- and third-party plugins import (contracts, hooks, options, losses, data helpers)."""
