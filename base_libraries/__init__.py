"""The gold base libraries (基础库): one module of builds per library and, beside it, one metadata
file per gold table (<library>__<entity>.yml), read by citylake.catalogue."""
