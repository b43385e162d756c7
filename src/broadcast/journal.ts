/**
 * The echo journal: what a member must remember across a restart so that it never echoes two
 * different hashes for one instance, nor sends two different models for one of its own rounds.
 *
 * Every ECHO and every own SEND is recorded (synchronously) before it leaves the member. After a
 * restart the broadcast reloads the records: a SEND whose hash differs from the one echoed before
 * is refused as equivocation, and `broadcast(round, …)` of a round already sent with another
 * payload throws `AlreadyBroadcastError`. Records below the floor are forgotten (the window
 * refuses those rounds for good).
 *
 * `createFileJournal` appends one JSON line per record (≈ 150 bytes; n per round) and rewrites the
 * file without the forgotten records once they are the majority. Appends are not fsync'ed: a
 * process crash keeps them (page cache), a power loss may not.
 */
import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { fromHex, toHex } from './crypto.ts'

export interface JournalEntry {
  kind: 'echo' | 'send'
  epoch: number
  round: number
  sender: string
  hash: Uint8Array
}

export interface EchoJournal {
  /** Records kept from before (a restart); called once, at start. */
  load(): JournalEntry[]
  /** Records one entry before the frame it covers is sent. */
  record(e: JournalEntry): void
  /** Records of rounds below `round` may be forgotten. */
  prune(round: number): void
}

/** A journal in memory: survives a broadcast's restart within one process (tests). */
export function createMemoryJournal(): EchoJournal & { entries: JournalEntry[] } {
  const j = {
    entries: [] as JournalEntry[],
    load: () => [...j.entries],
    record: (e: JournalEntry) => {
      j.entries.push(e)
    },
    prune: (round: number) => {
      j.entries = j.entries.filter((e) => e.round >= round)
    },
  }
  return j
}

interface Line {
  k: 'e' | 's'
  e: number
  r: number
  s: string
  h: string
}

/** A journal in one file (JSON lines); a missing file is an empty journal, a corrupt line is skipped. */
export function createFileJournal(path: string): EchoJournal {
  let live: JournalEntry[] = []
  let stale = 0
  const toLine = (e: JournalEntry): string => `${JSON.stringify({ k: e.kind === 'echo' ? 'e' : 's', e: e.epoch, r: e.round, s: e.sender, h: toHex(e.hash) } satisfies Line)}\n`
  return {
    load() {
      let text = ''
      try {
        text = readFileSync(path, 'utf8')
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        mkdirSync(dirname(path), { recursive: true })
      }
      live = []
      for (const raw of text.split('\n')) {
        if (raw.length === 0) continue
        try {
          const l = JSON.parse(raw) as Line
          if ((l.k !== 'e' && l.k !== 's') || !Number.isInteger(l.e) || !Number.isInteger(l.r) || typeof l.s !== 'string' || !/^[0-9a-f]{64}$/.test(l.h)) continue
          live.push({ kind: l.k === 'e' ? 'echo' : 'send', epoch: l.e, round: l.r, sender: l.s, hash: fromHex(l.h) })
        } catch {
          // a torn last line (crash mid-append): skipped
        }
      }
      return [...live]
    },
    record(e) {
      appendFileSync(path, toLine(e))
      live.push(e)
    },
    prune(round) {
      const before = live.length
      live = live.filter((e) => e.round >= round)
      stale += before - live.length
      if (stale < 256 || stale < live.length) return
      writeFileSync(`${path}.tmp`, live.map(toLine).join(''))
      renameSync(`${path}.tmp`, path)
      stale = 0
    },
  }
}
