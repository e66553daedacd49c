"""Real text: aligned ko-en-zh LibreOffice help paragraphs (a shipped sample and the full builder)
and readers for users' own plain-text or JSONL corpora."""
