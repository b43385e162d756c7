/** Test helpers shared by the config tests: strings shaped like PeerIds, without keys. */

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

/** n distinct strings shaped like Ed25519 PeerIds (`12D3KooW` + 44 base58 characters); no keys behind them. */
export function fakePeerIds(n: number): string[] {
  return Array.from({ length: n }, (_, i) => {
    let tail = ''
    for (let x = i, k = 0; k < 44; k++, x = Math.floor(x / 58)) tail += B58[x % 58]
    return `12D3KooW${tail}`
  })
}
