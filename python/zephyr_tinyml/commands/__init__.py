"""The command layer: each subcommand's parser and front door, above the library it calls."""
