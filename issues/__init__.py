"""The bundled sample queue and subscribers, packaged as `newsletter._sample` (see pyproject.toml).

`newsletter init --sample` and ./scripts/demo queue these articles and import subscribers.csv.
"""
