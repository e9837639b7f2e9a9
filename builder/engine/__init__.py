"""``pybuild serve``: the subset of the Docker Engine API that the docker CLI, docker-py
and docker-compose use to build and run, on a unix socket.

``server`` binds the socket and runs one thread per connection; ``routes`` maps each
request to an endpoint module (``system``, ``build``, ``images``, ``containers``,
``networks``, ``volumes``); ``wire`` reads requests and writes docker's reply shapes
(JSON, JSON-lines streams, the multiplexed and hijacked streams). Builds, runs, pushes,
pulls, saves and loads are ``pybuild`` commands in child processes (``children``): each
enters its own namespaces, as ``builder.build`` requires, and a client that goes away
cancels its child with SIGTERM, the CLI's own clean cancel.
"""
