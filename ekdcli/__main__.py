"""``python -m ekdcli`` (what ``torchrun -m ekdcli`` runs)."""

from ekdcli.cli.main import main

if __name__ == "__main__":
    main()
