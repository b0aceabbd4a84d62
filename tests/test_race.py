from async_stagger import staggered_race


async def test_smoke():
    async def ok():
        return 1

    assert await staggered_race([ok], 0.1) == (1, 0, [None], None)
