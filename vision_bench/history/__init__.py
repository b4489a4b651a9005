"""--history: many results files read as one series per model and variant, the steps in it found,
reported (Markdown, HTML, JSON) and gated."""
