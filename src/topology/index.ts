/**
 * Topologies: a whole swarm described by a scenario file (schema.ts), run as processes or in one
 * process (runner.ts), attacked by the standard Byzantine behaviours (behaviours.ts) over
 * emulated network conditions (network.ts), judged and plotted (report.ts), or as a matrix of
 * rules × behaviours × privacy (matrix.ts).
 */

export { type ActingBehaviour, actingBehaviour, type ByzantineAction } from './actions.ts'
export { type BehaviourParams, createTopologyBehaviour, needsLabelFlip, registerStandardBehaviours } from './behaviours.ts'
export { type MatrixCell, type MatrixReport, matrixMarkdown, matrixPlot, privacyLabel, runMatrix, timeToTargetPlot, tradeOffPlot } from './matrix.ts'
export { conditionedPort, isIdealNetwork, linkConditions, messageFate } from './network.ts'
export {
  buildReport,
  type ExpectationResult,
  evaluateExpectations,
  type MemberInfo,
  type MemberRound,
  maxPairwiseDistance,
  median,
  type NodeSummary,
  privacyText,
  type RoundFigures,
  renderSvg,
  reportHtml,
  reportPlots,
  type TimeToTarget,
  type TopologyReport,
  timeToAccuracy,
  verdict,
  writeReport,
} from './report.ts'
export { type ProgressEvent, type RoundProgress, type RunTopologyOptions, runTopology, type TopologyRun } from './runner.ts'
export {
  type BehaviourName,
  type ByzantineConfig,
  behaviourNames as standardBehaviourNames,
  byzantineByMember,
  type Expectations,
  type LinkConditions,
  loadScenario,
  type MatrixConfig,
  type MatrixPrivacy,
  memberName,
  type NetworkConfig,
  parseScenario,
  type Scenario,
  scenarioSchema,
} from './schema.ts'
