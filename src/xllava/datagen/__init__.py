"""mvif data generation: multilingual visual-instruction data from any OpenAI-compatible vision teacher.

`config` (what to ask, whom, at what cost), `generate` (selection, prompts, client, gates, store),
`derive` (store -> LLaVA JSONL), `stage` (a recipe's `datagen` stage on an endpoint it is handed).
Nothing is imported here, so `xllava.datagen.config` stays a cheap leaf for the recipe's config.
"""
