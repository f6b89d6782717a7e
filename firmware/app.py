# Application entry point: started by the boot stage with the verified slot's Boot context.
import asyncio

import selftest
from thermostat import Thermostat



async def _confirm_or_roll_back(boot, thermostat):
    reason = await selftest.run(thermostat)
    if reason is None:
        boot.confirm()
        boot.hal.report(boot, "normal")
    else:
        boot.log("app: self-test failed: " + reason)
        boot.rollback(reason)


async def _main(boot):
    hal = boot.hal
    thermostat = Thermostat(hal)
    tasks = [asyncio.create_task(thermostat.run())]
    for coro in hal.services(boot):
        tasks.append(asyncio.create_task(coro))
    if boot.trial:
        await _confirm_or_roll_back(boot, thermostat)
    await asyncio.gather(*tasks)


def main(boot):
    boot.log("app: %s running from slot %s" % (boot.version, boot.slot))
    asyncio.run(_main(boot))
