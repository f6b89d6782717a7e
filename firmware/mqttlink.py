# Cloud link supervisor: keeps one mqtt.Client connected, the only code that connects and
# reconnects (one supervisor, idempotent, as mqtt_as's _keep_connected). Waits as backoff.py
# says (random start, full jitter, reset when stable) and renews subscriptions.
import asyncio
import time

from backoff import Backoff
from mqtt import MQTTError, NotConnected, SubscribeRefused


class Link:
    """Keeps `client` connected: the one place that connects and reconnects.

    `up` and `down` are asyncio events (exactly one is set). Subscriptions made through
    the Link are renewed after every connect without a stored session. The wait before
    each attempt comes from `backoff` (see backoff.py for the numbers)."""

    def __init__(self, client, backoff=None, log=None):
        self.client = client
        self.backoff = backoff or Backoff()
        self.up = asyncio.Event()
        self.down = asyncio.Event()
        self.down.set()
        self._subs = {}
        self._task = None
        self._log = log or (lambda msg: None)
        self.attempts = 0
        self.connects = 0
        self.last_error = None

    @property
    def is_up(self):
        return self.up.is_set()

    def start(self, boot=True):
        """Start the supervisor task (once; later calls return the same task). With
        `boot`, the first attempt waits the random start-up delay."""
        if self._task is None:
            self._task = asyncio.create_task(self._keep_connected(boot))
        return self._task

    async def stop(self):
        """Stop reconnecting and leave cleanly (DISCONNECT: the will is not sent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        await self.client.disconnect()
        self._state(False)

    def _state(self, up):
        if up:
            self.down.clear()
            self.up.set()
        else:
            self.up.clear()
            self.down.set()

    async def _keep_connected(self, boot):
        delay = self.backoff.after_boot() if boot else 0
        while True:
            await asyncio.sleep_ms(delay)
            self.attempts += 1
            try:
                session = await self.client.connect()
                if not session:
                    await self._resubscribe()
            except (OSError, MQTTError, asyncio.TimeoutError) as e:
                self.client.close()
                self.last_error = e
                delay = self.backoff.after_failure()
                self._log("mqtt: connect failed (%r); next attempt in %d ms" % (e, delay))
                continue
            self.connects += 1
            since = time.ticks_ms()
            self._state(True)
            self._log("mqtt: connected")
            await self.client.wait_lost()
            self._state(False)
            self.last_error = self.client.last_error
            delay = self.backoff.after_loss(time.ticks_diff(time.ticks_ms(), since))
            self._log("mqtt: connection lost (%r); next attempt in %d ms"
                      % (self.last_error, delay))

    async def _resubscribe(self):
        for topic, qos in list(self._subs.items()):  # subscribe() may add to it meanwhile
            try:
                await self.client.subscribe(topic, qos)
            except SubscribeRefused as e:  # a broker policy, not a broken link: carry on
                self.last_error = e
                self._log("mqtt: %s" % e)

    async def subscribe(self, topic, qos=0):
        """Subscribe now if up, and again after every reconnect."""
        self._subs[topic] = qos
        if self.client.connected:
            try:
                await self.client.subscribe(topic, qos)
            except SubscribeRefused:
                del self._subs[topic]
                raise
            except NotConnected:
                pass  # the next connect subscribes

    async def unsubscribe(self, topic):
        self._subs.pop(topic, None)
        if self.client.connected:
            await self.client.unsubscribe(topic)

    async def publish(self, topic, payload, qos=0, retain=False):
        return await self.client.publish(topic, payload, qos, retain)

    async def message(self):
        return await self.client.message()
