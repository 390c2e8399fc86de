"""The node agent behind `spotplan watch`: metadata sources that report reclaim notices
(`sources`), what to do about a notice (`actions`), and the loop that ties them together with a
JSON-lines log and the documented exit codes (`agent`).

Only the standard library is imported here and in the sources, so the watcher starts fast and
idles cheaply; fsspec is imported only when a checkpoint has to be checked or uploaded.
"""
