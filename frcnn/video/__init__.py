"""Video: sources, the threaded decode -> detect -> track -> draw -> encode pipeline, the tracking step, the window."""
