# The product's basic function: a thermostat control loop that never waits on the network.
import asyncio
import time

from micropython import const

TICK_MS = const(250)


class Thermostat:
    """Hysteresis control of the heater relay around a set point (degrees Celsius)."""

    def __init__(self, hal, setpoint=20.0, hysteresis=0.5):
        self.hal = hal
        self.setpoint = setpoint
        self.hysteresis = hysteresis
        self.heating = False
        self.ticks = 0
        self.last_tick = None
        self.temperature = None

    def step(self):
        t = self.hal.sensor.read()
        self.temperature = t
        if t < self.setpoint - self.hysteresis:
            self.heating = True
        elif t > self.setpoint + self.hysteresis:
            self.heating = False
        self.hal.relay.value(self.heating)
        self.ticks += 1
        self.last_tick = time.ticks_ms()

    async def run(self):
        while True:
            self.step()
            await asyncio.sleep_ms(TICK_MS)
