/**
 * Errors of the aggregation and attack library. One class per condition, matched by `name`
 * or `instanceof`; each carries typed details. Bad input never produces a wrong answer: it
 * produces one of these.
 */
import { MonnaError } from '../errors.ts'

/** An input (or the context's reference vector) holds NaN or ±Infinity. */
export class NonFiniteInputError extends MonnaError {
  override name = 'NonFiniteInputError'
  /** index of the offending input, or -1 for `context.reference` */
  readonly input: number
  readonly coordinate: number
  readonly value: number
  constructor(rule: string, input: number, coordinate: number, value: number) {
    super(
      `${rule}: ${input < 0 ? 'context.reference' : `input ${input}`} has a non-finite value ${value} at coordinate ${coordinate}; ` +
        'drop that vector before aggregating',
    )
    this.input = input
    this.coordinate = coordinate
    this.value = value
  }
}

/** Vectors of different lengths (or a reference of the wrong length). */
export class DimensionMismatchError extends MonnaError {
  override name = 'DimensionMismatchError'
  /** index of the offending input, or -1 for `context.reference` */
  readonly input: number
  readonly expected: number
  readonly actual: number
  constructor(rule: string, input: number, expected: number, actual: number) {
    super(
      `${rule}: ${input < 0 ? 'context.reference' : `input ${input}`} has length ${actual}, expected ${expected} (the length of input 0)`,
    )
    this.input = input
    this.expected = expected
    this.actual = actual
  }
}

/** Fewer inputs than the rule needs for the declared f. `requirement` is e.g. "k > 2f". */
export class TooFewInputsError extends MonnaError {
  override name = 'TooFewInputsError'
  readonly rule: string
  readonly k: number
  readonly f: number
  readonly requirement: string
  constructor(rule: string, k: number, f: number, requirement: string) {
    super(`${rule} needs ${requirement}; got k = ${k} inputs with f = ${f}`)
    this.rule = rule
    this.k = k
    this.f = f
    this.requirement = requirement
  }
}

/** The rule (or attack) name is not one this library implements. */
export class UnknownRuleError extends MonnaError {
  override name = 'UnknownRuleError'
  readonly rule: string
  readonly known: readonly string[]
  constructor(rule: string, known: readonly string[], what = 'aggregation rule') {
    super(`unknown ${what} '${rule}'; known: ${known.join(', ')}`)
    this.rule = rule
    this.known = known
  }
}

/** A parameter is unknown to the rule/attack, of the wrong type, or out of range. */
export class InvalidParameterError extends MonnaError {
  override name = 'InvalidParameterError'
  readonly rule: string
  readonly parameter: string
  constructor(rule: string, parameter: string, message: string) {
    super(`${rule}: parameter '${parameter}' ${message}`)
    this.rule = rule
    this.parameter = parameter
  }
}

/** The rule (or attack) needs a context field the caller did not give (e.g. nna without `own`). */
export class MissingContextError extends MonnaError {
  override name = 'MissingContextError'
  readonly rule: string
  readonly field: string
  constructor(rule: string, field: string, message: string) {
    super(`${rule}: ${message}`)
    this.rule = rule
    this.field = field
  }
}

/** mda would have to enumerate more subsets than allowed (C(k, f) > maxSubsets). */
export class TooManySubsetsError extends MonnaError {
  override name = 'TooManySubsetsError'
  readonly subsets: number
  readonly maxSubsets: number
  constructor(rule: string, k: number, f: number, subsets: number, maxSubsets: number) {
    super(
      `${rule}: C(${k}, ${f}) = ${subsets} subsets exceeds maxSubsets = ${maxSubsets}; ` +
        'use another rule (e.g. nnm+cwtm) or raise maxSubsets knowingly (time grows with C(k, f))',
    )
    this.subsets = subsets
    this.maxSubsets = maxSubsets
  }
}
