"""The built-in email templates, packaged as `newsletter._templates` (see pyproject.toml).

An editor overrides them with a `templates/` folder beside their newsletter.toml.
"""
