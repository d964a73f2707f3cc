"""A Wishbone-classic bus master for Amaranth async testbenches (shared by the tests)."""

from __future__ import annotations

from neurophase.models.csr_model import Response


class SimBusMaster:
    """Wishbone-classic accesses from an Amaranth async testbench (byte addresses)."""

    def __init__(self, ctx, bus, *, timeout_cycles: int = 8):
        self.ctx, self.bus, self.timeout_cycles = ctx, bus, timeout_cycles
        self.answer_cycles: list[int] = []

    async def access(self, address: int, data: int | None = None, sel: int = 0b1111, *, on_answer=None):
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.adr, address // 4)
        ctx.set(bus.we, data is not None)
        ctx.set(bus.dat_w, data or 0)
        ctx.set(bus.sel, sel)
        ctx.set(bus.cyc, 1)
        ctx.set(bus.stb, 1)
        for waited in range(1, self.timeout_cycles + 1):
            await ctx.tick()
            ack, err = ctx.get(bus.ack), ctx.get(bus.err)
            if ack or err:
                assert not (ack and err), f"ack and err together at {address:#x}"
                response = Response(bool(ack), ctx.get(bus.dat_r) if ack else 0)
                if on_answer is not None:
                    on_answer()
                await ctx.tick()
                ctx.set(bus.cyc, 0)
                ctx.set(bus.stb, 0)
                self.answer_cycles.append(waited)
                return response
        raise AssertionError(f"bus locked: no ack or err {self.timeout_cycles} cycles after {address:#x}")

    async def read(self, address: int) -> int:
        response = await self.access(address)
        assert response.ok, f"read of {address:#x} answered err"
        return response.data

    async def write(self, address: int, data: int, sel: int = 0b1111) -> None:
        response = await self.access(address, data, sel)
        assert response.ok, f"write to {address:#x} answered err"
