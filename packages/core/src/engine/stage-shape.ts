/** Where a stage sits in the pipeline: the layers it runs, and whether it is the first or last. */
export interface StageShape {
  readonly layerStart: number
  readonly layerEnd: number
  readonly isFirst: boolean
  readonly isLast: boolean
}

/**
 * The shape every StageSession carries, copied once from what describes the stage (its init, or
 * the stage it wraps). Stage implementations extend this instead of repeating the four fields.
 */
export abstract class ShapedStage implements StageShape {
  readonly layerStart: number
  readonly layerEnd: number
  readonly isFirst: boolean
  readonly isLast: boolean

  protected constructor(shape: StageShape) {
    this.layerStart = shape.layerStart
    this.layerEnd = shape.layerEnd
    this.isFirst = shape.isFirst
    this.isLast = shape.isLast
  }
}
