/** The highest CPI API version this CPI speaks; v3 only adds create_stemcell's optional env. */
export const API_VERSION_INFO = 3;
