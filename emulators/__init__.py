"""Local AWS emulators the project starts and stops itself, on loopback and free ports.

`emulators.stack.LocalStack` is the embedded default (kinesalite, nghttpx, moto server);
see docs/EMULATORS.md for why these and how to use them.
"""
