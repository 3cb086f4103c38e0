# written by roost-sim; run as: gnuplot msg_delay_cdf.gp (in this directory)
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 800,500 noenhanced
} else {
  set terminal png size 800,500 noenhanced
}
set output 'msg_delay_cdf.png'
set grid
mode = ', CRYPTO OFF'
set title sprintf('delivery after the recipient came back (1496 of 1500 messages%s)', mode)
set xlabel 'seconds after the recipient came back'
set ylabel 'fraction of messages'
set yrange [0:1]
set key off
plot 'msg_delay_cdf.dat' using 1:2 with steps lw 2
set terminal svg size 800,500 noenhanced
set output 'msg_delay_cdf.svg'
replot
unset output
