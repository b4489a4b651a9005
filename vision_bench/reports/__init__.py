"""The results file (written and read back) and the reports drawn from it: JSON, CSV, Markdown,
HTML, findings, and the --compare and --merge commands."""
