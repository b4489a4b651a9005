"""The report model's pieces every capability builds its sections from: blocks (heading, paragraph,
list, table, figure, note), the Markdown table and CSV latency columns, and the charts. Rendering them
is reports/' work."""
