/**
 * Real kernel NAT on one machine for tests (docs/nat.md): Linux network namespaces joined by
 * veth pairs, NAT routers with nftables masquerade. Needs root, `ip` (iproute2) and `nft`
 * (nftables); `.ci/run` installs them.
 *
 *   "internet" 100.200.0.0/24 (a bridge in its own namespace)
 *     ├─ pub1  100.200.0.1      ├─ pub2  100.200.0.2
 *     ├─ nat1  100.200.0.11 ── priv1 10.1.0.2 (behind nat1)
 *     └─ nat2  100.200.0.12 ── priv2 10.2.0.2 (behind nat2)
 *
 * The "public" range is used only inside these namespaces, which have no route to the host's
 * own interfaces: no packet leaves them. (It is not one of the ranges libp2p counts as
 * private, as a real public network would not be.)
 *
 * The routers behave as common home and cloud NATs do: `cone` keeps a connection's source port
 * (endpoint-independent mapping, which hole punching needs) and drops unsolicited packets
 * rather than answering them; `symmetric` (`masquerade fully-random`) picks a random port for
 * every new connection, so a port learnt from one connection says nothing of the next and hole
 * punching cannot work.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export type NatKind = 'cone' | 'symmetric'

export interface NatLab {
  /** namespace of each host: pub1, pub2, priv1, priv2 */
  ns: { pub1: string; pub2: string; priv1: string; priv2: string }
  ip: { pub1: string; pub2: string; priv1: string; priv2: string; nat1: string; nat2: string }
  /** `ip netns exec <ns>`: prefix of a command run on that host */
  exec(host: keyof NatLab['ns']): string[]
  /**
   * Runs miniupnpd (UPnP IGD, nftables backend) on a NAT router, for the host behind it: it may map
   * ports 1024–65535 of that host only. Stopped by `teardown()`.
   */
  startUpnp(router: 'nat1' | 'nat2'): Promise<void>
  /** The router drops new connections from the host behind it to `ip` (that host can then be reached only inbound). */
  blockOutbound(router: 'nat1' | 'nat2', ip: string): Promise<void>
  teardown(): Promise<void>
}

/** Why miniupnpd cannot run here (in addition to `natLabUnavailable`), or undefined when it can. */
export async function upnpUnavailable(): Promise<string | undefined> {
  try {
    await run('miniupnpd', ['--version'])
  } catch {
    return '`miniupnpd` is not installed (apt-get install miniupnpd-nftables)'
  }
  return undefined
}

async function sh(cmd: string, args: string[], input?: string): Promise<string> {
  if (input === undefined) return (await run(cmd, args)).stdout
  return await new Promise((resolve, reject) => {
    const child = execFile(cmd, args, (err, stdout, stderr) => (err !== null ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout)))
    child.stdin!.end(input)
  })
}

/** Why namespaces with NAT cannot be built here, or undefined when they can. */
export async function natLabUnavailable(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`
  if (process.getuid?.() !== 0) return 'network namespaces need root (run the test as root, as CI does)'
  for (const [tool, args] of [
    ['ip', ['-V']],
    ['nft', ['--version']],
  ] as const) {
    try {
      await run(tool, [...args])
    } catch {
      return `\`${tool}\` is not installed (apt-get install ${tool === 'ip' ? 'iproute2' : 'nftables'})`
    }
  }
  const probe = `mprobe${process.pid % 100000}`
  try {
    await run('ip', ['netns', 'add', probe])
    await run('ip', ['netns', 'del', probe])
  } catch (err) {
    return `cannot create a network namespace: ${String(err).split('\n')[0]}`
  }
  return undefined
}

function nftRules(kind: NatKind): string {
  return `table ip nat {
  chain post {
    type nat hook postrouting priority srcnat; policy accept
    oifname "w0" ${kind === 'symmetric' ? 'masquerade fully-random' : 'masquerade'}
  }
}
table ip filter {
  chain input {
    type filter hook input priority filter; policy accept
    iifname "w0" ct state new drop
  }
  chain forwarding {
    type filter hook forward priority filter; policy drop
    ct state established,related accept
    iifname "lan0" oifname "w0" accept
    # ports forwarded to the LAN (miniupnpd's mappings, when it runs)
    ct status dnat accept
  }
}
`
}

/** Builds the namespaces (names unique to this process); call `teardown()` when done. */
export async function createNatLab(kind: NatKind): Promise<NatLab> {
  const p = `m${process.pid % 100000}${kind === 'cone' ? 'c' : 's'}`
  const hosts = ['inet', 'pub1', 'pub2', 'nat1', 'nat2', 'priv1', 'priv2'] as const
  const name = (h: string): string => `${p}-${h}`
  const created: string[] = []
  const daemons: { child: ChildProcess; dir: string }[] = []
  const teardown = async (): Promise<void> => {
    for (const d of daemons.splice(0)) {
      if (d.child.exitCode === null && d.child.signalCode === null) {
        const gone = new Promise((resolve) => d.child.once('exit', resolve))
        d.child.kill('SIGKILL')
        await gone
      }
      await rm(d.dir, { recursive: true, force: true }).catch(() => {})
    }
    for (const ns of created.reverse()) await run('ip', ['netns', 'del', ns]).catch(() => {})
  }
  try {
    for (const h of hosts) {
      await run('ip', ['netns', 'add', name(h)])
      created.push(name(h))
      await run('ip', ['-n', name(h), 'link', 'set', 'lo', 'up'])
    }
    const inet = name('inet')
    await run('ip', ['-n', inet, 'link', 'add', 'br0', 'type', 'bridge'])
    await run('ip', ['-n', inet, 'link', 'set', 'br0', 'up'])
    // veth names: at most 15 characters, unique on the host while they are created there
    let k = 0
    const wan = async (h: string, addr: string): Promise<void> => {
      const outer = `${p}w${k++}`
      await run('ip', ['link', 'add', outer, 'type', 'veth', 'peer', 'name', 'w0', 'netns', name(h)])
      await run('ip', ['link', 'set', outer, 'netns', inet])
      await run('ip', ['-n', inet, 'link', 'set', outer, 'master', 'br0', 'up'])
      await run('ip', ['-n', name(h), 'addr', 'add', `${addr}/24`, 'dev', 'w0'])
      await run('ip', ['-n', name(h), 'link', 'set', 'w0', 'up'])
    }
    const lan = async (router: string, host: string, net: string): Promise<void> => {
      const outer = `${p}l${k++}`
      await run('ip', ['link', 'add', outer, 'type', 'veth', 'peer', 'name', 'l0', 'netns', name(host)])
      await run('ip', ['link', 'set', outer, 'netns', name(router)])
      await run('ip', ['-n', name(router), 'link', 'set', outer, 'name', 'lan0'])
      await run('ip', ['-n', name(router), 'addr', 'add', `${net}.1/24`, 'dev', 'lan0'])
      await run('ip', ['-n', name(router), 'link', 'set', 'lan0', 'up'])
      await run('ip', ['-n', name(host), 'addr', 'add', `${net}.2/24`, 'dev', 'l0'])
      await run('ip', ['-n', name(host), 'link', 'set', 'l0', 'up'])
      await run('ip', ['-n', name(host), 'route', 'add', 'default', 'via', `${net}.1`])
      await run('ip', ['netns', 'exec', name(router), 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
      await sh('ip', ['netns', 'exec', name(router), 'nft', '-f', '-'], nftRules(kind))
    }
    await wan('pub1', '100.200.0.1')
    await wan('pub2', '100.200.0.2')
    await wan('nat1', '100.200.0.11')
    await wan('nat2', '100.200.0.12')
    await lan('nat1', 'priv1', '10.1.0')
    await lan('nat2', 'priv2', '10.2.0')
  } catch (err) {
    await teardown()
    throw err
  }
  const ns = { pub1: name('pub1'), pub2: name('pub2'), priv1: name('priv1'), priv2: name('priv2') }
  return {
    ns,
    ip: { pub1: '100.200.0.1', pub2: '100.200.0.2', priv1: '10.1.0.2', priv2: '10.2.0.2', nat1: '100.200.0.11', nat2: '100.200.0.12' },
    exec: (host) => ['ip', 'netns', 'exec', ns[host]],
    startUpnp: async (router) => {
      const lan = router === 'nat1' ? '10.1.0' : '10.2.0'
      // miniupnpd adds its rules to these chains: forwarding (accept), prerouting (DNAT)
      await sh('ip', ['netns', 'exec', name(router), 'nft', '-f', '-'], `table inet upnp {
  chain forward { type filter hook forward priority -10; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 90; policy accept; jump postrouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
`)
      const dir = await mkdtemp(join(tmpdir(), `monna-upnp-${router}-`))
      await writeFile(
        join(dir, 'miniupnpd.conf'),
        `ext_ifname=w0
listening_ip=lan0
enable_upnp=yes
enable_natpmp=no
secure_mode=yes
upnp_table_name=upnp
upnp_nat_table_name=upnp
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
uuid=3b3d4f7e-0000-4000-8000-${String(process.pid).padStart(12, '0').slice(-12)}
allow 1024-65535 ${lan}.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`,
      )
      // -d: in the foreground (killed by teardown); its own pid file (several routers, several tests)
      const child = spawn('ip', ['netns', 'exec', name(router), 'miniupnpd', '-d', '-f', join(dir, 'miniupnpd.conf'), '-P', join(dir, 'miniupnpd.pid')], { stdio: 'ignore' })
      daemons.push({ child, dir })
      const failed = await Promise.race([new Promise((resolve) => child.once('exit', (code) => resolve(`miniupnpd exited with ${code}`))), new Promise((resolve) => setTimeout(resolve, 500, undefined))])
      if (failed !== undefined) throw new Error(String(failed))
    },
    blockOutbound: async (router, ip) => {
      await run('ip', ['netns', 'exec', name(router), 'nft', 'insert', 'rule', 'ip', 'filter', 'forwarding', 'iifname', 'lan0', 'ip', 'daddr', ip, 'ct', 'state', 'new', 'drop'])
    },
    teardown,
  }
}
