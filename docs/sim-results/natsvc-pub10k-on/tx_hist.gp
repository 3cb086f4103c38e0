# written by roost-sim; run as: gnuplot tx_hist.gp (in this directory)
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
  set terminal pngcairo size 800,500 noenhanced
} else {
  set terminal png size 800,500 noenhanced
}
set output 'tx_hist.png'
set grid
mode = ', CRYPTO OFF'
set title sprintf('datagrams sent per host (10000 hosts%s)', mode)
set xlabel 'datagrams sent'
set ylabel 'hosts'
set style fill solid 0.6
set boxwidth 669 absolute
set key off
set xrange [0:*]
set yrange [0:*]
plot 'tx_hist.dat' using ($1+334.5):2 with boxes
set terminal svg size 800,500 noenhanced
set output 'tx_hist.svg'
replot
unset output
