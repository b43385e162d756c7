import assert from 'node:assert/strict'
import { test } from 'node:test'
import { HostThrottle, TARPIT_PER_IP, THROTTLE_BURST, THROTTLE_RATE } from '../../../src/net/host-throttle.ts'

test('an IP is admitted freely until marked, then a burst and the rate until the mark expires', () => {
  const t = new HostThrottle()
  assert.ok(t.admit('10.0.0.1', 0))
  t.mark('10.0.0.1', 10_000, 0)
  let admitted = 0
  for (let i = 0; i < 20; i++) if (t.admit('10.0.0.1', 0)) admitted++
  assert.equal(admitted, THROTTLE_BURST)
  assert.equal(t.refused, 20 - THROTTLE_BURST)
  // two seconds later: two more
  admitted = 0
  for (let i = 0; i < 10; i++) if (t.admit('10.0.0.1', 2000)) admitted++
  assert.equal(admitted, 2 * THROTTLE_RATE)
  // another IP is not affected; the mark expires
  assert.ok(t.admit('10.0.0.2', 2000))
  for (let i = 0; i < 10; i++) assert.ok(t.admit('10.0.0.1', 10_000))
})

test('a later mark extends the throttle; clear lifts it; distinct IPs cannot grow it without bound', () => {
  const t = new HostThrottle()
  t.mark('::1', 1000, 0)
  t.mark('::1', 5000, 0)
  t.mark('::1', 2000, 0)
  for (let i = 0; i < THROTTLE_BURST; i++) assert.ok(t.admit('::1', 3000))
  assert.ok(!t.admit('::1', 3000), 'still throttled at 3 s (the 5 s mark won)')
  t.clear('::1')
  assert.ok(t.admit('::1', 3000))
  for (let i = 0; i < 10_000; i++) t.mark(`10.1.${i >> 8}.${i & 255}`, 60_000, 0)
  // the oldest are forgotten: at most 4096 kept
  let kept = 0
  for (let i = 0; i < 10_000; i++) {
    const ip = `10.1.${i >> 8}.${i & 255}`
    for (let k = 0; k < THROTTLE_BURST; k++) t.admit(ip, 1)
    if (!t.admit(ip, 1)) kept++
  }
  assert.ok(kept <= 4096 && kept > 0, `${kept} IPs throttled`)
})

test('the tarpit holds at most TARPIT_PER_IP refused connections of an IP at a time', () => {
  const t = new HostThrottle()
  for (let i = 0; i < TARPIT_PER_IP; i++) assert.ok(t.tarpit('10.0.0.1'))
  assert.ok(!t.tarpit('10.0.0.1'), 'the next one is closed at once')
  assert.ok(t.tarpit('10.0.0.2'), 'another IP has its own places')
  t.untarpit('10.0.0.1')
  assert.ok(t.tarpit('10.0.0.1'), 'a place given back is taken again')
  assert.ok(!t.tarpit('10.0.0.1'))
})
