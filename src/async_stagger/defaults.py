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

#: RFC 8305 §5: a connection attempt delay "MUST" have a lower bound; never
#: start attempts closer together than this because of a timer (10 ms).
MINIMUM_CONNECTION_ATTEMPT_DELAY: Final = 0.01

#: asyncio's default buffer limit for streams, mirrored for ``open_connection``.
STREAM_LIMIT: Final = 2**16
