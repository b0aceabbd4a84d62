"""The Happy Eyeballs timers and knobs, in one place.

Every default the library uses comes from here, so the RFC's numbers are
written down exactly once. Values follow RFC 8305 §9 ("Summary of
Configurable Values").
"""

from typing import Final

#: RFC 8305 §9 "Connection Attempt Delay": how long to wait after starting one
#: connection attempt before starting the next (250 ms recommended).
CONNECTION_ATTEMPT_DELAY: Final = 0.25

#: RFC 8305 §9 "Resolution Delay": after an A answer arrives first, how long to
#: wait for the AAAA answer before connecting with what is there (50 ms).
RESOLUTION_DELAY: Final = 0.05

#: RFC 8305 §4 "First Address Family Count": how many addresses of the
#: preferred family lead the interleaved list before families alternate.
FIRST_ADDRESS_FAMILY_COUNT: Final = 1

#: RFC 8305 §9 "Minimum Connection Attempt Delay": the shortest delay a delay
#: computed from measured round-trip times may have (100 ms recommended).
MINIMUM_CONNECTION_ATTEMPT_DELAY: Final = 0.1

#: RFC 8305 §5: a connection attempt delay "MUST" have a lower bound; no
#: computed delay starts attempts closer together than this (10 ms).
CONNECTION_ATTEMPT_DELAY_FLOOR: Final = 0.01

#: RFC 8305 §9 "Maximum Connection Attempt Delay": the longest delay a delay
#: computed from measured round-trip times may have (2 s).
MAXIMUM_CONNECTION_ATTEMPT_DELAY: Final = 2.0

#: How long the connection history remembers an outcome (seconds). RFC 6555
#: §4.2 retries a family that failed after about 10 minutes; an entry older
#: than this is forgotten, so a path that recovered is found again.
HISTORY_LIFETIME: Final = 600.0

#: How many (network, address) entries the connection history keeps; the
#: least recently used go first.
HISTORY_SIZE: Final = 1024

#: asyncio's default buffer limit for streams, mirrored for ``open_connection``.
STREAM_LIMIT: Final = 2**16
