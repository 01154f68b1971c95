"""newsletter: an email newsletter publisher for article-driven newsletters.

The stages, one module each: articles -> teaser -> render -> delivery -> providers,
with `store` owning every SQL statement and `cli` only parsing arguments.
"""

__version__ = "0.1.0"
