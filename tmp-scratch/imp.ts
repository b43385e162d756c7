const mods = process.argv.slice(2)
const r0 = process.memoryUsage().rss
for (const m of mods) await import(m)
const u = process.memoryUsage()
console.log(mods.join(' '), 'rss', Math.round(u.rss / 1e6), 'heapUsed', Math.round(u.heapUsed / 1e6), 'delta', Math.round((u.rss - r0) / 1e6))
