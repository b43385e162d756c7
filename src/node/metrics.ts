/**
 * Prometheus metrics of a node (prom-client). Optional: without a registry the engine records
 * nothing. Names carry their unit (seconds, total); every series has a `member` label so many
 * in-process members can share one registry. libp2p's own metrics are added separately by the
 * composition root through @libp2p/prometheus-metrics on the same registry.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface NodeMetrics {
  setRound(round: number): void
  delivery(kind: 'valid' | 'late' | 'catch-up'): void
  rejection(reason: string): void
  aggregationSeconds(s: number): void
  echoLatencySeconds(s: number): void
  roundSeconds(s: number): void
  setStalled(stalled: boolean): void
  setLoss(loss: number): void
  setAccuracy(acc: number): void
  setEpsilon(eps: number): void
  catchUp(): void
  /** membership epoch in force (optional so other implementations need not track it) */
  setEpoch?(epoch: number): void
  /** certified models a round waits for (n − r) and the redundancy r in force (docs/redundancy.md) */
  setQuorum?(needed: number, r: number): void
  /** a checkpoint could not be written (retried at the next checkpoint round) */
  checkpointFailure?(): void
}

function getOrCreate<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make()
}

export function createNodeMetrics(opts: { registry: Registry; member: string }): NodeMetrics {
  const { registry, member } = opts
  const registers = [registry]
  const gauge = (name: string, help: string) =>
    getOrCreate(registry, name, () => new Gauge({ name, help, labelNames: ['member'], registers }))
  const counter = (name: string, help: string, extra: string[] = []) =>
    getOrCreate(registry, name, () => new Counter({ name, help, labelNames: ['member', ...extra], registers }))
  const histogram = (name: string, help: string, buckets: number[]) =>
    getOrCreate(registry, name, () => new Histogram({ name, help, labelNames: ['member'], buckets, registers }))
  // Buckets from 1 ms to ~1 min: aggregation of a LeNet (431k params) over 21 inputs takes tens of ms,
  // rounds on a LAN hundreds of ms to seconds.
  const secondsBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

  const round = gauge('monna_round', 'Last round this member completed')
  const deliveries = counter('monna_deliveries_total', 'Certified model deliveries by outcome', ['kind'])
  const rejections = counter('monna_rejections_total', 'Rejected deliveries or messages by reason', ['reason'])
  const aggregation = histogram('monna_aggregation_seconds', 'Time to aggregate one round', secondsBuckets)
  const echo = histogram('monna_echo_latency_seconds', 'Time from our SEND until our own instance is certified and delivered', secondsBuckets)
  const roundTime = histogram('monna_round_seconds', 'Wall time of one round', secondsBuckets)
  const stalled = gauge('monna_stalled', '1 while the current round waits past the round timeout for n − r deliveries')
  const stalls = counter('monna_stalls_total', 'Rounds that stalled (fewer than n − r deliveries by the round timeout)')
  const needed = gauge('monna_round_quorum', 'Certified models a round waits for, own included (n − r)')
  const redundancy = gauge('monna_redundancy_r', 'Members a round may go without (r; f ≤ r < n, default f)')
  const loss = gauge('monna_loss', 'Local mini-batch loss of the last step')
  const accuracy = gauge('monna_accuracy', 'Test accuracy at the last evaluation')
  const epsilon = gauge('monna_privacy_epsilon', 'Differential-privacy ε spent so far')
  const catchUps = counter('monna_catch_ups_total', 'Times this member fell behind and caught up from certified deliveries')
  const epochGauge = gauge('monna_membership_epoch', 'Membership epoch in force (0 = the swarm file)')
  const checkpointFailures = counter('monna_checkpoint_failures_total', 'Checkpoints that could not be written to the data directory (each is retried at the next checkpoint round)')

  stalled.set({ member }, 0)
  stalls.inc({ member }, 0)
  checkpointFailures.inc({ member }, 0)
  return {
    setRound: (r) => round.set({ member }, r),
    delivery: (kind) => deliveries.inc({ member, kind }),
    rejection: (reason) => rejections.inc({ member, reason }),
    aggregationSeconds: (s) => aggregation.observe({ member }, s),
    echoLatencySeconds: (s) => echo.observe({ member }, s),
    roundSeconds: (s) => roundTime.observe({ member }, s),
    setStalled: (s) => {
      stalled.set({ member }, s ? 1 : 0)
      if (s) stalls.inc({ member })
    },
    setLoss: (x) => loss.set({ member }, x),
    setAccuracy: (x) => accuracy.set({ member }, x),
    setEpsilon: (x) => epsilon.set({ member }, x),
    catchUp: () => catchUps.inc({ member }),
    setEpoch: (e) => epochGauge.set({ member }, e),
    setQuorum: (k, r) => {
      needed.set({ member }, k)
      redundancy.set({ member }, r)
    },
    checkpointFailure: () => checkpointFailures.inc({ member }),
  }
}
