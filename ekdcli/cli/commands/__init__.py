"""One module per subcommand; each imports torch only inside its function body."""
